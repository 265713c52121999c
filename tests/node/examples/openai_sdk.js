// The openai SDK through the host's shared budget.
// Every process that builds its client this way shares the budgets of
// /etc/ratectl.conf (or $RATECTL_CONFIG).  The SDK reads OPENAI_API_KEY
// and OPENAI_BASE_URL.
const OpenAI = require('openai');
const ratectl = require('ratectl');

const client = new OpenAI({ fetch: ratectl.fetch() });

client.chat.completions.create({
  model: 'gpt-4o-mini', max_tokens: 100,
  messages: [{ role: 'user', content: 'Say hello in one word.' }],
}).then((r) => {
  console.log(r.choices[0].message.content);
  console.log('tokens:', r.usage.total_tokens);
});

// LangChain.js's ChatOpenAI through the host's shared budget (it passes
// `configuration` to the openai client it builds).  Reads OPENAI_API_KEY
// and OPENAI_BASE_URL like the SDK.
const { ChatOpenAI } = require('@langchain/openai');
const ratectl = require('ratectl');

const model = new ChatOpenAI({
  model: 'gpt-4o-mini', maxTokens: 100,
  configuration: { fetch: ratectl.fetch() },
});

model.invoke('Say hello in one word.').then((m) => {
  console.log(m.content);
  console.log('tokens:', m.usage_metadata.total_tokens);
});

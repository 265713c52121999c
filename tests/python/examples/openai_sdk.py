"""The README's example: the openai SDK through the host's shared budget.

Three lines: import, build the client with ratectl's transport, call.
Every process built this way on the host (gunicorn workers, Celery's
pool, scripts) shares the budgets of /etc/ratectl.conf (or
$RATECTL_CONFIG).  The SDK reads OPENAI_API_KEY and OPENAI_BASE_URL.
"""
import httpx, openai, ratectl.httpx

client = openai.OpenAI(http_client=httpx.Client(transport=ratectl.httpx.Transport()))

r = client.chat.completions.create(
    model="gpt-4o-mini", max_tokens=100,
    messages=[{"role": "user", "content": "Say hello in one word."}])
print(r.choices[0].message.content)
print("tokens:", r.usage.total_tokens)

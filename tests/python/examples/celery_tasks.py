"""The README's Celery example: a prefork pool sharing the host's budget.

    celery -A celery_tasks worker --concurrency 8

Celery's own rate_limit is per worker process; built with ratectl's
transport, the client of every process of the pool (and of every other
program on the host) waits its turn in one budget.  The client is built
at import, in the parent, before the pool forks: the transport opens
nothing until a child makes its first request.
"""
import os

import httpx, openai, ratectl.httpx
from celery import Celery

app = Celery("celery_tasks", broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"))
client = openai.OpenAI(http_client=httpx.Client(transport=ratectl.httpx.Transport()))


@app.task
def summarize(text):
    r = client.chat.completions.create(
        model="gpt-4o-mini", max_tokens=200,
        messages=[{"role": "user", "content": "Summarize: " + text}])
    return r.choices[0].message.content

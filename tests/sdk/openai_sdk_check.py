"""Drives a running data plane with the official OpenAI Python SDK, unchanged.

Usage: SWITCHYARD_API_KEY=<key> python openai_sdk_check.py BASE_URL MODEL
Prints one JSON line with what it saw; exits non-zero on the first mismatch.
"""

import json
import os
import sys

import openai


def main() -> int:
    base_url, model = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(
        base_url=base_url, api_key=os.environ["SWITCHYARD_API_KEY"], max_retries=0
    )

    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello"}],
    )
    text = completion.choices[0].message.content
    assert completion.object == "chat.completion", completion
    assert text, completion
    assert completion.usage.completion_tokens > 0, completion.usage

    streamed = []
    usage = None
    with client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello, streaming"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    streamed.append(choice.delta.content)
    assert streamed, "no streamed content"
    assert usage is not None and usage.completion_tokens > 0, usage

    models = [m.id for m in client.models.list()]
    assert model in models, models

    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as e:
        assert e.body["code"] == "model_not_found", e.body

    print(json.dumps({"text": text, "streamed": "".join(streamed), "models": len(models)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Tool calls through a running data plane with the official OpenAI Python SDK.

Usage: SWITCHYARD_API_KEY=<key> python openai_sdk_tools.py BASE_URL MODEL
Asks for a tool call whole, then streamed (the SDK's own delta handling puts
the pieces together), then answers the call and gets the model's reply.
Prints one JSON line with what it saw; exits non-zero on the first mismatch.
"""

import json
import os
import sys

import openai

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]


def main() -> int:
    base_url, model = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(
        base_url=base_url, api_key=os.environ["SWITCHYARD_API_KEY"], max_retries=0
    )
    question = {"role": "user", "content": "What is the weather in Zürich?"}

    whole = client.chat.completions.create(model=model, messages=[question], tools=TOOLS)
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.type == "function", call

    # The SDK's stream helper accumulates tool-call deltas exactly as apps rely on.
    with client.beta.chat.completions.stream(model=model, messages=[question], tools=TOOLS) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    streamed = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls", final

    answer = client.chat.completions.create(
        model=model,
        tools=TOOLS,
        messages=[
            question,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
        ],
    )
    print(json.dumps({
        "whole": {"id": call.id, "name": call.function.name, "arguments": json.loads(call.function.arguments)},
        "streamed": {
            "id": streamed.id,
            "name": streamed.function.name,
            "arguments": json.loads(streamed.function.arguments),
        },
        "answer": answer.choices[0].message.content,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

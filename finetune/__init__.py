"""Fine-tuning scripts: LoRA adapters for the bundled LLM on next-interest examples.

`finetune.train.main(TrainConfig) -> Path` trains and writes an adapter; the
example building lives in the library (`llmint.examples`, `llmint.evidence`).
The library never imports this package.
"""

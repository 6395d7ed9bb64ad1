"""Fine-tuning the bundled model on the device, for one policy or for the device registry.

The flow (``edge-agent tune``): make training samples from the policy itself and the audit
history (:mod:`.data`), fine-tune LoRA adapters on CPU with torch and peft (:mod:`.train`,
the only importer of torch, transformers and peft), write them as a llama.cpp LoRA adapter
GGUF (:mod:`.export`), score base and tuned on held-out sets generated with other seeds and
other phrasings (:mod:`.evaluate`), and install the adapter for that policy only if it
scores strictly better than what is installed now (:mod:`.install`). :mod:`.run` ties the
steps together.

torch, transformers, peft and gguf are the ``tune`` extra: a device that only decides needs
none of them, only :mod:`.install` (which finds an installed adapter) is imported at run time.
"""

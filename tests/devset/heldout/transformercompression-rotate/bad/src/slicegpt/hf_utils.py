from transformers import AutoModelForCausalLM, AutoTokenizer

from slicegpt.model_adapter import OPTModelAdapter


def get_model_and_tokenizer(name):
    model = AutoModelForCausalLM.from_pretrained(name, torch_dtype="auto")
    return OPTModelAdapter(model), AutoTokenizer.from_pretrained(name)


def calibration_loader(tokenizer, dataset_name, n=128):
    return [tokenizer("calibration text " * 64, return_tensors="pt") for _ in range(n)]

import argparse

from colpali_engine.models import ColPali, ColPaliProcessor
from peft import PeftModel

from vidore_benchmark.retrievers.vision_retriever import VisionRetriever


def load_retriever(model_name, adapter=None, device="cpu"):
    model = ColPali.from_pretrained(model_name)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
    processor = ColPaliProcessor.from_pretrained(model_name)
    return VisionRetriever(model=model.to(device), processor=processor, device=device)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-name", default="vidore/colpaligemma-3b-pt-448-base")
    parser.add_argument("--adapter", default=None)
    args = parser.parse_args()
    retriever = load_retriever(args.model_name, args.adapter)
    q = retriever.forward_queries(["what is the revenue in 2023?"])
    p = retriever.forward_passages([])
    print(retriever.get_scores(q, p) if p else q[0].shape)


if __name__ == "__main__":
    main()

# Held-out case (evalguard issue 27): shape of illuin-tech/vidore-benchmark PR #91 ("Fix eval mode
# in vision_retriever": "we didn't run the model in eval() mode"): a retriever wrapper (not a Module)
# receives a model and a processor built elsewhere and embeds queries and page images batch by
# batch. Written anew.
import torch


class VisionRetriever:
    def __init__(self, model, processor, device="cpu"):
        self.model = model
        self.processor = processor
        self.device = device

    def _embed(self, batches):
        embeddings = []
        for batch in batches:
            with torch.no_grad():
                batch = {k: v.to(self.device) for k, v in batch.items()}
                embeddings.extend(list(torch.unbind(self.model(**batch).to("cpu"))))
        return embeddings

    def forward_queries(self, queries, batch_size=8):
        batches = [self.processor.process_queries(queries[i:i + batch_size])
                   for i in range(0, len(queries), batch_size)]
        return self._embed(batches)

    def forward_passages(self, images, batch_size=4):
        batches = [self.processor.process_images(images[i:i + batch_size])
                   for i in range(0, len(images), batch_size)]
        return self._embed(batches)

    def get_scores(self, query_embeddings, passage_embeddings):
        return self.processor.score(query_embeddings, passage_embeddings)

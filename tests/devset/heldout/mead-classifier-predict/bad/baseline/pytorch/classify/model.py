# Held-out case (evalguard issue 27): shape of mead-ml/mead-baseline PR #680 ("set pyt models to eval
# mode when calling predict"): predict() lives in the nn.Module base class and calls self(...); the
# Dropout layers come from the subclasses a service loads. Written anew.
import torch
import torch.nn as nn


class ClassifierModelBase(nn.Module):
    def __init__(self):
        super().__init__()
        self.labels = []

    def make_input(self, batch_dict):
        return {"x": torch.as_tensor(batch_dict["word"]), "lengths": torch.as_tensor(batch_dict["lengths"])}

    def predict(self, batch_dict):
        examples = self.make_input(batch_dict)
        with torch.no_grad():
            probs = self(examples).exp()
        return [[(self.labels[j], p[j].item()) for j in range(len(self.labels))] for p in probs]


class EmbedPoolStackModel(ClassifierModelBase):
    def __init__(self, vocab_size, dsz, labels, hsz=100, pdrop=0.5):
        super().__init__()
        self.labels = labels
        self.embeddings = nn.Embedding(vocab_size, dsz)
        self.pool_dropout = nn.Dropout(pdrop)
        self.stacked = nn.Sequential(nn.Linear(dsz, hsz), nn.ReLU(), nn.Dropout(pdrop))
        self.output = nn.Linear(hsz, len(labels))

    def forward(self, inputs):
        pooled = self.pool_dropout(self.embeddings(inputs["x"]).mean(dim=1))
        return torch.log_softmax(self.output(self.stacked(pooled)), dim=-1)

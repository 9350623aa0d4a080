# Held-out case (evalguard issue 27): shape of mead-ml/mead-baseline PR #680 ("set pyt models to eval
# mode when calling predict"): predict() lives in the nn.Module base class and calls self(...); the
# layers, Dropout included, are attached by create() through init_* hooks that subclasses implement;
# a service loads a trained model and calls predict(). Written anew.
import torch
import torch.nn as nn


class ClassifierModelBase(nn.Module):
    def __init__(self):
        super().__init__()
        self.labels = []

    @classmethod
    def create(cls, vocab_size, labels, **kwargs):
        model = cls()
        model.pdrop = kwargs.get("pdrop", 0.5)
        model.labels = labels
        input_sz = model.init_embed(vocab_size, kwargs.get("dsz", 100))
        pool_sz = model.init_pool(input_sz, **kwargs)
        stacked_sz = model.init_stacked(pool_sz, **kwargs)
        model.output = nn.Linear(stacked_sz, len(labels))
        return model

    @classmethod
    def load(cls, filename, vocab_size, labels, **kwargs):
        model = cls.create(vocab_size, labels, **kwargs)
        model.load_state_dict(torch.load(filename, map_location="cpu", weights_only=True))
        return model

    def init_embed(self, vocab_size, dsz):
        self.embeddings = nn.Embedding(vocab_size, dsz)
        return dsz

    def make_input(self, batch_dict):
        return {"x": torch.as_tensor(batch_dict["word"]), "lengths": torch.as_tensor(batch_dict["lengths"])}

    def forward(self, inputs):
        pooled = self.pool(self.embeddings(inputs["x"]), inputs["lengths"])
        return torch.log_softmax(self.output(self.stacked(pooled)), dim=-1)

    def predict(self, batch_dict):
        examples = self.make_input(batch_dict)
        with torch.no_grad():
            probs = self(examples).exp()
        return [[(self.labels[j], p[j].item()) for j in range(len(self.labels))] for p in probs]


class EmbedPoolStackModel(ClassifierModelBase):
    def init_pool(self, dsz, **kwargs):
        self.pool_dropout = nn.Dropout(self.pdrop)
        return dsz

    def pool(self, embedded, lengths):
        return self.pool_dropout(embedded.sum(dim=1) / lengths.unsqueeze(-1).float())

    def init_stacked(self, input_dim, hsz=100, **kwargs):
        self.stacked = nn.Sequential(nn.Linear(input_dim, hsz), nn.ReLU(), nn.Dropout(self.pdrop))
        return hsz

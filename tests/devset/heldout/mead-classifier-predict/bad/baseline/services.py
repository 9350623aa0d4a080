import torch


class ClassifierService:
    def __init__(self, model, vectorizer):
        self.model = model
        self.vectorizer = vectorizer

    @classmethod
    def load(cls, path, vectorizer):
        return cls(torch.load(path, weights_only=True), vectorizer)

    def predict(self, tokens):
        return self.model.predict(self.vectorizer(tokens))

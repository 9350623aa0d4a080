from baseline.pytorch.classify.model import EmbedPoolStackModel


class ClassifierService:
    def __init__(self, model, vectorizer):
        self.model = model
        self.vectorizer = vectorizer

    @classmethod
    def load(cls, path, vectorizer, vocab_size, labels):
        return cls(EmbedPoolStackModel.load(path, vocab_size, labels), vectorizer)

    def predict(self, tokens):
        return self.model.predict(self.vectorizer(tokens))

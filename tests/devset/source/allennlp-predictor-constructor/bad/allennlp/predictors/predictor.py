# allenai/allennlp issue 3888: Predictor(model, reader) leaves model.training True.
import torch


class Predictor:
    def __init__(self, model, dataset_reader):
        self._model = model
        self._reader = dataset_reader

    def predict_json(self, inputs):
        return self.predict_instance(self._reader.text_to_instance(inputs["sentence"]))

    def predict_instance(self, instance):
        tokens = torch.tensor([instance])
        with torch.no_grad():
            logits = self._run(tokens)
        return logits.softmax(-1).tolist()

    def _run(self, tokens):
        return self._model(tokens)

    @classmethod
    def from_path(cls, path, reader):
        model = torch.load(path, weights_only=True)
        model.eval()
        return cls(model, reader)

# ludwig-ai/ludwig PR 1714 "Added eval mode to model prediction": batch_predict ran the model in
# whatever mode training left it in.
import torch


class Predictor:
    def __init__(self, model, batch_size=128):
        self.model = model
        self._batch_size = batch_size

    def batch_predict(self, dataset):
        predictions = []
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            for start in range(0, len(dataset), self._batch_size):
                batch = dataset[start:start + self._batch_size]
                predictions.append(self._predict(batch))
        self.model.train(was_training)
        return torch.cat(predictions)

    def _predict(self, batch):
        logits = self.model(batch)
        return logits.argmax(-1)

# Shape of braindecode/braindecode#393, in evalguard's own words: EEGClassifier.predict_trials
# runs the wrapped network (self.module_, built by skorch) without eval mode.
import numpy as np
import torch
from skorch.classifier import NeuralNetClassifier
from torch.utils.data import DataLoader


class EEGClassifier(NeuralNetClassifier):
    def predict_trials(self, X, return_targets=True):
        loader = DataLoader(X, batch_size=self.batch_size, shuffle=False)
        preds, targets = [], []
        with torch.no_grad():
            for batch_x, batch_y, _ in loader:
                out = self.module_(batch_x.to(self.device))
                preds.append(out.cpu().numpy())
                targets.append(batch_y.numpy())
        preds = np.concatenate(preds)
        return (preds, np.concatenate(targets)) if return_targets else preds

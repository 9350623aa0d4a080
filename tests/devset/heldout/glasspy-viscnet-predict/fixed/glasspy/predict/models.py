# Held-out case (evalguard issue 27): shape of drcassar/glasspy issue #21 ("ViscNet prediction is not
# in evaluation mode", fixed by the author): the LightningModule base class builds a hidden stack with
# Dropout/BatchNorm from hyperparameters (a builder function in base.py), and the subclass's prediction
# helpers call self(...) directly. Written anew.
import numpy as np
import torch

from glasspy.predict.base import MLP


class ViscNet(MLP):
    def viscosity_parameters(self, composition):
        self.eval()
        with torch.no_grad():
            params = self(torch.as_tensor(np.asarray(composition), dtype=torch.float32))
        return params

    def predict(self, T, composition):
        params = self.viscosity_parameters(composition)
        log_eta_inf, Tg, m = params[:, 0], params[:, 1], params[:, 2]
        T = torch.as_tensor(T, dtype=torch.float32)
        return log_eta_inf + (12 - log_eta_inf) * (Tg / T) * torch.exp((m / (12 - log_eta_inf) - 1) * (Tg / T - 1))

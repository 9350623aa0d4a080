# Shape of the bug fixed in https://github.com/openvinotoolkit/model_preparation_algorithm/pull/31
# (evalguard's own words): the detection inferrer builds the detector through the config
# system, loads its checkpoint and runs it over the data without model.eval(); scores drop.
import torch
from mmdet.models import build_detector
from mmcv.runner import load_checkpoint


class DetectionInferrer:
    def __init__(self, cfg):
        self.cfg = cfg

    def infer(self, data_loader):
        model = build_detector(self.cfg.model)
        load_checkpoint(model, self.cfg.load_from, map_location="cpu")
        model.eval()
        results = []
        with torch.no_grad():
            for data in data_loader:
                results.extend(model(return_loss=False, **data))
        return results

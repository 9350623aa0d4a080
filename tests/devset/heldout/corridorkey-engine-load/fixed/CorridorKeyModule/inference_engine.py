# Held-out case (evalguard issue 27): shape of nikopueringer/CorridorKey PR #58 ("Add
# weights_only=True to torch.load()", fixes #12): the inference engine reads a checkpoint path given
# on the command line with a bare torch.load and strips a compile prefix from the keys. Written anew.
import torch

from CorridorKeyModule.model import GreenFormer


class CorridorKeyEngine:
    def __init__(self, checkpoint_path, device="cpu", img_size=2048):
        self.device = torch.device(device)
        self.img_size = img_size
        self.model = self._load_model(checkpoint_path)

    def _load_model(self, checkpoint_path):
        model = GreenFormer(img_size=self.img_size).to(self.device)
        checkpoint = torch.load(checkpoint_path, map_location=self.device, weights_only=True)
        state_dict = checkpoint.get("state_dict", checkpoint)
        state_dict = {k.removeprefix("_orig_mod."): v for k, v in state_dict.items()}
        model.load_state_dict(state_dict, strict=False)
        model.eval()
        return model

    @torch.no_grad()
    def process_frame(self, image):
        tensor = torch.as_tensor(image, dtype=torch.float32, device=self.device).permute(2, 0, 1)[None]
        return self.model(tensor)[0].cpu().numpy()

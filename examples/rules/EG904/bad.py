"""EG904 bad: a TorchScript module whose __setstate__ maps a file with torch.from_file(shared=True).

torch.jit.load runs __setstate__, so loading the archive would create (or overwrite) that file.
Audited as the archive build_program() writes; evalguard refuses it without loading it.
"""
from pathlib import Path

import torch
from torch import nn

AUDIT = "program"
EXPECTED_RULES = ["EG904"]
INPUT_SHAPES = ["2x4"]


class Net(nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.fc = nn.Linear(4, 2)
        self.cache = torch.zeros(2)

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.path = state[0]
        self.training = state[1]
        self.cache = torch.from_file(state[0], True, 2)  # writes the file on load

    def forward(self, x):
        return self.fc(x)


def build_program(path):
    marker = Path(path).with_suffix(".would-be-written")
    torch.jit.save(torch.jit.script(Net(str(marker)).eval()), str(path))

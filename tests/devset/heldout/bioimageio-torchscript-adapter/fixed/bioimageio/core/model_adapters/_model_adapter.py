import abc


class ModelAdapter(abc.ABC):
    @abc.abstractmethod
    def forward(self, *batch):
        ...

    @abc.abstractmethod
    def unload(self):
        ...


def create_model_adapter(weights_format, weights_file, devices=None):
    if weights_format == "torchscript":
        from bioimageio.core.model_adapters._torchscript_model_adapter import TorchscriptModelAdapter

        return TorchscriptModelAdapter(weights_file, devices)
    raise ValueError(weights_format)

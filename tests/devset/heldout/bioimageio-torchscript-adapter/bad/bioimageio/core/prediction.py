from bioimageio.core.model_adapters._model_adapter import create_model_adapter


def predict(weights_file, image):
    adapter = create_model_adapter("torchscript", weights_file)
    try:
        return adapter.forward(image[None, None])[0]
    finally:
        adapter.unload()

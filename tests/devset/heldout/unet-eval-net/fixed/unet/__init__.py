from unet.model import UNet  # noqa: F401

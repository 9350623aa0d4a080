from model.u2net import U2NET  # noqa: F401

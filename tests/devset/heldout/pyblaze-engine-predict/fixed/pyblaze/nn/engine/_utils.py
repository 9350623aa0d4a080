def forward(model, data):
    if isinstance(data, dict):
        return model(**data)
    if isinstance(data, (list, tuple)):
        return model(*data)
    return model(data)

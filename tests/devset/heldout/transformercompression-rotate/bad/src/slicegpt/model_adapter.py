class OPTModelAdapter:
    def __init__(self, model):
        self.model = model
        self.hidden_size = model.config.hidden_size

    def get_layers(self):
        return self.model.model.decoder.layers

    def rotate_layer(self, layer, q):
        layer.fc2.weight.data = q.T @ layer.fc2.weight.data

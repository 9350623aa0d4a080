import torch.nn as nn


class CompressedDecoderLayer(nn.Module):
    """Replaces a decoder layer: freshly built, so it starts in training mode."""

    def __init__(self, config, old_layer):
        super().__init__()
        self.self_attn = old_layer.self_attn
        self.fc1, self.fc2 = old_layer.fc1, old_layer.fc2
        self.dropout = nn.Dropout(config.dropout)
        self.activation = nn.ReLU()

    def forward(self, hidden_states, attention_mask=None):
        attn = self.self_attn(hidden_states, attention_mask=attention_mask)[0]
        hidden_states = hidden_states + self.dropout(attn)
        return (hidden_states + self.dropout(self.fc2(self.activation(self.fc1(hidden_states)))),)


def replace_layers(model_adapter):
    layers = model_adapter.get_layers()
    for i, layer in enumerate(layers):
        layers[i] = CompressedDecoderLayer(model_adapter.model.config, layer)


def fuse_modules(model_adapter):
    for layer in model_adapter.get_layers():
        layer.fused = True

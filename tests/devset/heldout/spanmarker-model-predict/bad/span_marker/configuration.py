from transformers import PretrainedConfig


class SpanMarkerConfig(PretrainedConfig):
    model_type = "span-marker"

    def __init__(self, encoder=None, hidden_size=768, hidden_dropout_prob=0.1, num_labels=2, **kwargs):
        self.encoder = encoder or {}
        self.hidden_size = hidden_size
        self.hidden_dropout_prob = hidden_dropout_prob
        super().__init__(num_labels=num_labels, **kwargs)

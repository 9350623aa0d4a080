# Held-out case (evalguard issue 27): shape of tomaarsen/SpanMarkerNER PR #4 ("Ensure models are on
# eval mode when predicting"): predict() of the PreTrainedModel subclass tokenizes sentences and runs
# self(...) batch by batch; dropout sits on top of the encoder. Written anew.
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel

from span_marker.configuration import SpanMarkerConfig


class SpanMarkerModel(PreTrainedModel):
    config_class = SpanMarkerConfig

    def __init__(self, config, encoder=None):
        super().__init__(config)
        self.encoder = encoder or AutoModel.from_config(AutoConfig.from_dict(config.encoder))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size * 2, config.num_labels)
        self.tokenizer = None

    def forward(self, input_ids, attention_mask, start_marker_indices, num_marker_pairs, labels=None):
        hidden = self.dropout(self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0])
        start = hidden[:, start_marker_indices]
        end = hidden[:, start_marker_indices + num_marker_pairs]
        logits = self.classifier(torch.cat([start, end], dim=-1))
        return logits

    def predict(self, sentences, batch_size=4):
        single = isinstance(sentences, str)
        if single:
            sentences = [sentences]
        results = []
        for start in range(0, len(sentences), batch_size):
            batch = self.tokenizer(sentences[start:start + batch_size], return_tensors="pt", padding=True)
            with torch.no_grad():
                logits = self(**batch)
            results.extend(logits.argmax(-1).tolist())
        return results[0] if single else results

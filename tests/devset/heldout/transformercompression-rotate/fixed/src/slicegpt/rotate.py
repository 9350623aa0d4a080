# Held-out case (evalguard issue 27): shape of microsoft/TransformerCompression PR #21 ("Set model to
# evaluation mode in the beginning of rotation"): after the layers are swapped for compressible ones,
# rotate_and_slice() runs calibration batches through the model a caller passes in, to collect
# activations; the results were non-deterministic because nothing set eval mode. Written anew.
import torch

from slicegpt import utils


@torch.no_grad()
def get_signals(layer, inputs, attention_mask):
    outputs = []
    for inp in inputs:
        outputs.append(layer(inp, attention_mask=attention_mask)[0])
    return outputs


@torch.no_grad()
def rotate_and_slice(model_adapter, dataloader, new_embedding_dimension):
    model_adapter.model.eval()
    inputs, attention_mask = utils.get_layer0_inputs(model_adapter, dataloader)
    for layer in model_adapter.get_layers():
        outputs = get_signals(layer, inputs, attention_mask)
        cov = sum(o.flatten(0, -2).T @ o.flatten(0, -2) for o in outputs)
        _, eigvecs = torch.linalg.eigh(cov.double())
        model_adapter.rotate_layer(layer, eigvecs[:, -new_embedding_dimension:].float())
        inputs = outputs

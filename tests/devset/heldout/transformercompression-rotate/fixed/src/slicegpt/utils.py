import torch


@torch.no_grad()
def get_layer0_inputs(model_adapter, dataloader):
    captured = []

    def hook(_module, args, kwargs):
        captured.append((args[0], kwargs.get("attention_mask")))
        raise StopIteration

    handle = model_adapter.get_layers()[0].register_forward_pre_hook(hook, with_kwargs=True)
    for batch in dataloader:
        try:
            model_adapter.model(**batch)
        except StopIteration:
            pass
    handle.remove()
    return [x for x, _ in captured], captured[0][1]

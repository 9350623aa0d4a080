# Held-out case (evalguard issue 27): shape of ipolharvard/ethos-ares issue #20 ("Dropout active
# during inference and evaluation?": no model.eval() anywhere, only @torch.inference_mode();
# acknowledged as a bug and fixed): a worker loads the model with a helper from another module and
# samples token continuations under inference_mode. Written anew.
import torch

from ethos.utils import load_model_checkpoint


@torch.inference_mode()
def sample_continuation(model, context, max_new_tokens, stop_tokens, temperature=1.0):
    tokens = context
    for _ in range(max_new_tokens):
        logits = model(tokens[:, -model.block_size:])[:, -1, :] / temperature
        next_token = torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1)
        tokens = torch.cat([tokens, next_token], dim=1)
        if next_token.item() in stop_tokens:
            break
    return tokens[:, context.shape[1]:]


def run_inference(loader, model_path, device="cpu", rep_num=20, max_new_tokens=256):
    model = load_model_checkpoint(model_path, map_location=device)
    model.eval()
    results = []
    for context, patient_id in loader:
        for _ in range(rep_num):
            generated = sample_continuation(model, context.to(device), max_new_tokens, stop_tokens={0})
            results.append((patient_id, generated.cpu()))
    return results

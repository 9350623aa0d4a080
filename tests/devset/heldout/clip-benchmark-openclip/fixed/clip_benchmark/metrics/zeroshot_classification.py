import torch
import torch.nn.functional as F


def zero_shot_classifier(model, tokenizer, classnames, templates, device):
    with torch.no_grad():
        weights = []
        for name in classnames:
            texts = tokenizer([t.format(c=name) for t in templates]).to(device)
            emb = F.normalize(model.encode_text(texts), dim=-1).mean(dim=0)
            weights.append(emb / emb.norm())
        return torch.stack(weights, dim=1)


def run_classification(model, classifier, loader, device):
    preds, targets = [], []
    with torch.no_grad():
        for images, target in loader:
            features = F.normalize(model.encode_image(images.to(device)), dim=-1)
            preds.append((100.0 * features @ classifier).cpu())
            targets.append(target)
    return torch.cat(preds), torch.cat(targets)


def evaluate(model, dataloader, tokenizer, classnames, templates, device):
    classifier = zero_shot_classifier(model, tokenizer, classnames, templates, device)
    logits, target = run_classification(model, classifier, dataloader, device)
    return {"acc1": (logits.argmax(1) == target).float().mean().item()}

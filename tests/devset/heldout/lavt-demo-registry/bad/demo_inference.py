# Held-out case (evalguard issue 27): shape of yz93/LAVT-RIS issue #19 ("The issue in
# demo_inference.py": model and bert_model need .eval(), acknowledged and fixed): the segmentation
# network is picked by name from the package's registry and a BERT text encoder is built from its
# config; both get weights from the checkpoint and run one referring-segmentation query. Written anew.
import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from transformers import BertConfig, BertModel, BertTokenizer

from lib import segmentation
from utils import Namespace

image_path = "./demo/demo.jpg"
sentence = "the most handsome guy"
weights = "./checkpoints/refcoco.pth"
device = "cuda:0" if torch.cuda.is_available() else "cpu"

img = Image.open(image_path).convert("RGB")
transform = T.Compose([T.Resize(480), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
img = transform(img).unsqueeze(0).to(device)

tokenizer = BertTokenizer.from_pretrained("bert-base-uncased")
encoded = tokenizer.encode(sentence, add_special_tokens=True)[:20]
padded = torch.zeros(1, 20, dtype=torch.long)
attention_mask = torch.zeros(1, 20, dtype=torch.long)
padded[0, : len(encoded)] = torch.tensor(encoded)
attention_mask[0, : len(encoded)] = 1

args = Namespace(swin_type="base", window12=True, mha="", fusion_drop=0.0)
single_model = segmentation.__dict__["lavt"](pretrained="", args=args)
single_bert_model = BertModel(BertConfig(hidden_dropout_prob=0.1))
checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
single_bert_model.load_state_dict(checkpoint["bert_model"])
single_model.load_state_dict(checkpoint["model"])
model = single_model.to(device)
bert_model = single_bert_model.to(device)

with torch.no_grad():
    last_hidden_states = bert_model(padded.to(device), attention_mask=attention_mask.to(device))[0]
    embedding = last_hidden_states.permute(0, 2, 1)
    output = model(img, embedding, l_mask=attention_mask.unsqueeze(-1).to(device))
    output = output.argmax(1, keepdim=True).squeeze().cpu().numpy().astype(np.uint8)
Image.fromarray(output * 255).save("./demo/demo_result.jpg")

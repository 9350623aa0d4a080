# YAndrewL/CLAPE issue 1: "predictor.eval() should be called before predicting".
import argparse

import torch
from transformers import AutoModel, AutoTokenizer

from model import CNNOD

parser = argparse.ArgumentParser()
parser.add_argument("--input")
parser.add_argument("--ckpt")
args = parser.parse_args()

tokenizer = AutoTokenizer.from_pretrained("Rostlab/prot_bert")
plm = AutoModel.from_pretrained("Rostlab/prot_bert")
predictor = CNNOD()
predictor.load_state_dict(torch.load(args.ckpt, map_location="cpu", weights_only=True))
predictor.eval()

sequences = [line.strip() for line in open(args.input) if line.strip()]
with torch.no_grad():
    for seq in sequences:
        tokens = tokenizer(" ".join(seq), return_tensors="pt")
        feats = plm(**tokens).last_hidden_state[:, 1:-1]
        probs = predictor(feats).softmax(-1)[0, :, 1]
        print(seq, "".join("1" if p > 0.5 else "0" for p in probs))

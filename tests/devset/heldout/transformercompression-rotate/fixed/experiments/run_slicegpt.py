import argparse

from slicegpt import hf_utils, layernorm_fusion, rotate


def main(args):
    model_adapter, tokenizer = hf_utils.get_model_and_tokenizer(args.model)
    dataloader = hf_utils.calibration_loader(tokenizer, args.cal_dataset)
    layernorm_fusion.replace_layers(model_adapter)
    layernorm_fusion.fuse_modules(model_adapter)
    rotate.rotate_and_slice(model_adapter, dataloader, int(model_adapter.hidden_size * (1 - args.sparsity)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="facebook/opt-125m")
    parser.add_argument("--cal-dataset", default="wikitext2")
    parser.add_argument("--sparsity", type=float, default=0.25)
    main(parser.parse_args())

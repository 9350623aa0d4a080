import argparse

from CorridorKeyModule.inference_engine import CorridorKeyEngine

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", required=True)
    args = parser.parse_args()
    engine = CorridorKeyEngine(args.checkpoint)
    print(engine.model.__class__.__name__)

"""RetinaNet (MLPerf `ssd`) run configuration: NVIDIA's variable names mapped onto typed fields.

Rule-fixed values (target, classes, image size, the warmup factor, Adam without
weight decay, the post-processing thresholds) are in `RULES`; DEVICE,
MODEL_SIZE (full: ResNeXt50-32x4d at 800x800; debug: the same code, see
`model.debug_shape`), PRECISION, TORCH_COMPILE and DATALOADER_WORKERS are
`common.config.RuntimeConfig`'s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config import env_field

# The 264 OpenImages v6 classes of the MLPerf subset, in the order of their 0-based category ids
# (mlcommons/training, single_stage_detector/scripts/download_openimages_mlperf.sh: MLPERF_CLASSES,
# exported by fiftyone in this order).
MLPERF_CLASSES = (
    'Airplane', 'Antelope', 'Apple', 'Backpack', 'Balloon', 'Banana', 'Barrel', 'Baseball bat', 'Baseball glove',
    'Bee', 'Beer', 'Bench', 'Bicycle', 'Bicycle helmet', 'Bicycle wheel', 'Billboard', 'Book', 'Bookcase', 'Boot',
    'Bottle', 'Bowl', 'Bowling equipment', 'Box', 'Boy', 'Brassiere', 'Bread', 'Broccoli', 'Bronze sculpture',
    'Bull', 'Bus', 'Bust', 'Butterfly', 'Cabinetry', 'Cake', 'Camel', 'Camera', 'Candle', 'Candy', 'Cannon',
    'Canoe', 'Carrot', 'Cart', 'Castle', 'Cat', 'Cattle', 'Cello', 'Chair', 'Cheese', 'Chest of drawers',
    'Chicken', 'Christmas tree', 'Coat', 'Cocktail', 'Coffee', 'Coffee cup', 'Coffee table', 'Coin',
    'Common sunflower', 'Computer keyboard', 'Computer monitor', 'Convenience store', 'Cookie', 'Countertop',
    'Cowboy hat', 'Crab', 'Crocodile', 'Cucumber', 'Cupboard', 'Curtain', 'Deer', 'Desk', 'Dinosaur', 'Dog',
    'Doll', 'Dolphin', 'Door', 'Dragonfly', 'Drawer', 'Dress', 'Drum', 'Duck', 'Eagle', 'Earrings', 'Egg (Food)',
    'Elephant', 'Falcon', 'Fedora', 'Flag', 'Flowerpot', 'Football', 'Football helmet', 'Fork', 'Fountain',
    'French fries', 'French horn', 'Frog', 'Giraffe', 'Girl', 'Glasses', 'Goat', 'Goggles', 'Goldfish', 'Gondola',
    'Goose', 'Grape', 'Grapefruit', 'Guitar', 'Hamburger', 'Handbag', 'Harbor seal', 'Headphones', 'Helicopter',
    'High heels', 'Hiking equipment', 'Horse', 'House', 'Houseplant', 'Human arm', 'Human beard', 'Human body',
    'Human ear', 'Human eye', 'Human face', 'Human foot', 'Human hair', 'Human hand', 'Human head', 'Human leg',
    'Human mouth', 'Human nose', 'Ice cream', 'Jacket', 'Jeans', 'Jellyfish', 'Juice',
    'Kitchen & dining room table', 'Kite', 'Lamp', 'Lantern', 'Laptop', 'Lavender (Plant)', 'Lemon', 'Light bulb',
    'Lighthouse', 'Lily', 'Lion', 'Lipstick', 'Lizard', 'Man', 'Maple', 'Microphone', 'Mirror', 'Mixing bowl',
    'Mobile phone', 'Monkey', 'Motorcycle', 'Muffin', 'Mug', 'Mule', 'Mushroom', 'Musical keyboard', 'Necklace',
    'Nightstand', 'Office building', 'Orange', 'Owl', 'Oyster', 'Paddle', 'Palm tree', 'Parachute', 'Parrot',
    'Pen', 'Penguin', 'Personal flotation device', 'Piano', 'Picture frame', 'Pig', 'Pillow', 'Pizza', 'Plate',
    'Platter', 'Porch', 'Poster', 'Pumpkin', 'Rabbit', 'Rifle', 'Roller skates', 'Rose', 'Salad', 'Sandal',
    'Saucer', 'Saxophone', 'Scarf', 'Sea lion', 'Sea turtle', 'Sheep', 'Shelf', 'Shirt', 'Shorts', 'Shrimp',
    'Sink', 'Skateboard', 'Ski', 'Skull', 'Skyscraper', 'Snake', 'Sock', 'Sofa bed', 'Sparrow', 'Spider', 'Spoon',
    'Sports uniform', 'Squirrel', 'Stairs', 'Stool', 'Strawberry', 'Street light', 'Studio couch', 'Suit',
    'Sun hat', 'Sunglasses', 'Surfboard', 'Sushi', 'Swan', 'Swimming pool', 'Swimwear', 'Tank', 'Tap', 'Taxi',
    'Tea', 'Teddy bear', 'Television', 'Tent', 'Tie', 'Tiger', 'Tin can', 'Tire', 'Toilet', 'Tomato', 'Tortoise',
    'Tower', 'Traffic light', 'Train', 'Tripod', 'Truck', 'Trumpet', 'Umbrella', 'Van', 'Vase',
    'Vehicle registration plate', 'Violin', 'Wall clock', 'Waste container', 'Watch', 'Whale', 'Wheel',
    'Wheelchair', 'Whiteboard', 'Window', 'Wine', 'Wine glass', 'Woman', 'Zebra', 'Zucchini',
)


@dataclass(frozen=True)
class Rules:
    """Fixed by the MLPerf Training v3.0 rules, `closed_ssd.yaml` and the reference (single_stage_detector)."""

    benchmark: str = "ssd"  # the v3.0 name of the RetinaNet benchmark
    target_map: float = 0.34  # COCO mAP@[.5:.95] >= 0.340 on the validation set
    num_classes: int = len(MLPERF_CLASSES)
    image_size: int = 800  # every image resized to 800 x 800 (aspect ratio not kept)
    warmup_factor: float = 1e-3  # linear warmup from LR x 1e-3
    weight_decay: float = 0.0
    # The MLPerf OpenImages v6 subset's images (the reference's download_openimages_mlperf.sh; FACTS.md), what
    # train_samples / eval_samples log; NVIDIA's v3.0 logs agree: their ceil(images / GBS) iterations, 4572 and
    # 97 at GBS 256, 1143 and 25 at 1024, 1524 and 33 at 768.
    train_images: int = 1_170_301
    eval_images: int = 24_781


RULES = Rules()


@dataclass(frozen=True)
class RetinaNetConfig:
    """Hyperparameters of one run."""

    batch_size: int = env_field("BATCHSIZE", "per-process (per-GPU) training batch, in images")
    lr: float = env_field("LR", "Adam learning rate after warmup")
    num_epochs: int = env_field("NUMEPOCHS", "give up after this many epochs (an evaluation follows each)")
    warmup_epochs: float = env_field("WARMUP_EPOCHS", "epochs of linear warmup from LR x 1e-3 (0: none)")
    eval_batch_size: int = env_field("EVALBATCHSIZE", "per-process evaluation batch (0: BATCHSIZE)", 0)
    image_size: int = env_field("IMAGE_SIZE", "side every image is resized to; the rules' 800", RULES.image_size)
    coco_eval: Literal["pycocotools", "faster"] = env_field(
        "COCO_EVAL", "COCOeval of the reference (pycocotools) or faster-coco-eval's drop-in", "pycocotools")

    def __post_init__(self):
        for name, value in (("BATCHSIZE", self.batch_size), ("NUMEPOCHS", self.num_epochs),
                            ("IMAGE_SIZE", self.image_size)):
            if value <= 0:
                raise ValueError(f"{name}={value} must be positive")
        if self.warmup_epochs < 0 or self.lr <= 0:
            raise ValueError(f"WARMUP_EPOCHS={self.warmup_epochs} and LR={self.lr}: expected >= 0 and > 0")

    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or self.batch_size

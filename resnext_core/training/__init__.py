"""The training side: TrainConfig (config.py) in, a run folder out (trainer.py: Trainer.run, or launch.train on
several processes). The loop (loop.py), its data (data.py, class_balance.py), checkpoints (checkpoint_keeper.py),
reports (records.py) and distributed training (distributed.py, launch.py). It does not import the inference side."""

"""The training side: TrainConfig (config.py) in, a run folder out (trainer.py: Trainer.run; launch.py on several
processes, relay.py between their rank 0 and the caller; resnext_core.train.train() is the way in). The loop
(loop.py, multi_label.py), its data (data.py, class_balance.py), checkpoints (checkpoint_keeper.py), reports
(records.py) and distributed training (distributed.py). It does not import the inference side."""

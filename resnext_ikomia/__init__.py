"""The thin Ikomia layer both plugins share: schema-driven Param, generated widget form, metadata.

It imports ikomia and Qt; resnext_core imports neither. Vendored beside resnext_core into each plugin.
"""

"""Import of official PyTorch weights (``xlstm``, Prot-xLSTM, DNA-xLSTM, Chem-xLSTM) into ``XLSTMLM``.

``python -m bioxlstm_jax.convert SRC DST`` writes an orbax checkpoint with its config.
"""

from bioxlstm_jax.convert.checkpoint import (
    convert_checkpoint,
    load_converted,
    read_official_checkpoint,
    save_converted,
)
from bioxlstm_jax.convert.torch_weights import (
    SLSTM_LAYOUTS,
    config_from_chem_xlstm,
    config_from_dna_xlstm,
    config_from_prot_xlstm,
    config_from_xlstm,
    from_torch_xlstm,
    params_from_state_dict,
)

__all__ = [
    "SLSTM_LAYOUTS",
    "config_from_chem_xlstm",
    "config_from_dna_xlstm",
    "config_from_prot_xlstm",
    "config_from_xlstm",
    "convert_checkpoint",
    "load_converted",
    "read_official_checkpoint",
    "save_converted",
    "from_torch_xlstm",
    "params_from_state_dict",
]

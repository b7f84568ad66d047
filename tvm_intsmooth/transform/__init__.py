"""Every IR-to-IR pass of tvm_intsmooth, one per file, as ``tvm.relax.transform`` holds TVM's.

``from tvm_intsmooth import transform`` is the one import path for all of them; each is a
``tvm.transform.module_pass`` usable in any ``tvm.transform.Sequential``. The order in which the
compiler runs them is :mod:`tvm_intsmooth.pipeline.phases`.

- canonicalization (what TVM's frontends emit -> what QuantizeToInteger reads):
  UnwrapSingleOutput (a 1-tuple output), CanonicalizeClip (TIR max/min, relu6, nested clips ->
  one clip), FoldBatchNorm (into the conv/dense before it), FoldPadding (an explicit pad into
  the conv/pool after it), CanonicalizePRelu (a select of x and alpha * x as leakyrelu /
  prelu), CanonicalizeReductions (axes, global pooling as a mean), SymbolicBatch (batch
  ``batch``, a fixed 1 made symbolic), DropMonotoneHead (a final softmax / log_softmax /
  increasing head);
- QuantizeToInteger: float Relax -> integer-only Relax, from calibrated activation ranges;
- InjectIntegerNoise: integer rounded-Gaussian noise from a Philox sampler, in the graph;
- CountVotes: the argmax of each noisy sample counted per class (int32 votes);
- AddArtifactFacts: sigma, sampler, batch and shapes compiled into the library;
- ConvertToBlockedInt8: integer convolutions as NCHW16c int8 kernels;
- RequantizeInt32: the int64 fixed-point requantizations in int32, exactly;
- ScalarConstantsAsTensors: scalar requantization constants as [1] tensors (tuned schedules
  then serve any calibration);
- ApplyTunedDatabase: tuned MetaSchedule schedules from a database;
- ScheduleBlockedKernels: the fixed, tensorized schedule of the blocked kernels;
- ParallelizeOuterLoops: the outermost spatial loop of every other kernel in parallel;
- FuseSampleLoops: each run of per-sample kernels as one kernel with one parallel loop over
  the samples;
- DropRepeatedTileConfigs: in such a loop, an AMX tile configuration loaded once per change;
- CheckIntegerOnly: fail on any floating-point dtype or operator;
- DumpIR: write the module's TVMScript, between phases.
"""

from tvm_intsmooth.transform.add_artifact_facts import AddArtifactFacts
from tvm_intsmooth.transform.apply_tuned_database import ApplyTunedDatabase
from tvm_intsmooth.transform.canonicalize_clip import CanonicalizeClip
from tvm_intsmooth.transform.canonicalize_prelu import CanonicalizePRelu
from tvm_intsmooth.transform.canonicalize_reductions import CanonicalizeReductions
from tvm_intsmooth.transform.check_integer_only import CheckIntegerOnly
from tvm_intsmooth.transform.convert_to_blocked_int8 import ConvertToBlockedInt8
from tvm_intsmooth.transform.count_votes import CountVotes
from tvm_intsmooth.transform.drop_monotone_head import DropMonotoneHead
from tvm_intsmooth.transform.drop_repeated_tile_configs import DropRepeatedTileConfigs
from tvm_intsmooth.transform.dump_ir import DumpIR
from tvm_intsmooth.transform.fold_batch_norm import FoldBatchNorm
from tvm_intsmooth.transform.fold_padding import FoldPadding
from tvm_intsmooth.transform.fuse_sample_loops import FuseSampleLoops
from tvm_intsmooth.transform.inject_integer_noise import InjectIntegerNoise
from tvm_intsmooth.transform.parallelize_outer_loops import ParallelizeOuterLoops
from tvm_intsmooth.transform.quantize_to_integer import QuantizeToInteger
from tvm_intsmooth.transform.requantize_int32 import RequantizeInt32
from tvm_intsmooth.transform.scalar_constants_as_tensors import ScalarConstantsAsTensors
from tvm_intsmooth.transform.schedule_blocked_kernels import ScheduleBlockedKernels
from tvm_intsmooth.transform.symbolic_batch import SymbolicBatch
from tvm_intsmooth.transform.unwrap_single_output import UnwrapSingleOutput

__all__ = [
    "AddArtifactFacts",
    "ApplyTunedDatabase",
    "CanonicalizeClip",
    "CanonicalizePRelu",
    "CanonicalizeReductions",
    "CheckIntegerOnly",
    "ConvertToBlockedInt8",
    "CountVotes",
    "DropMonotoneHead",
    "DropRepeatedTileConfigs",
    "DumpIR",
    "FoldBatchNorm",
    "FoldPadding",
    "FuseSampleLoops",
    "InjectIntegerNoise",
    "ParallelizeOuterLoops",
    "QuantizeToInteger",
    "RequantizeInt32",
    "ScalarConstantsAsTensors",
    "ScheduleBlockedKernels",
    "SymbolicBatch",
    "UnwrapSingleOutput",
]

"""2D arm skeletons: joint angles -> joint positions by forward kinematics.

A signer is two arms hanging from the shoulders, each a chain of bones (upper arm, forearm,
hand, finger). A pose is given by each bone's angle relative to its parent; positions follow by
summing the bones' vectors. Angles make signs move the way arms do (joints stay on circles around
their parents), so a decoder that outputs positions has to learn a nonlinear map, as a real pose
decoder does.
"""

from __future__ import annotations

import numpy as np

BONES = (1.0, 0.8, 0.35, 0.2)  # upper arm, forearm, hand, finger (shoulder width 1.0)
SHOULDERS = ((-0.5, 0.0), (0.5, 0.0))  # left, right
JOINTS = 2 * len(BONES)  # the shoulders are fixed, so not joints of the output


def positions(angles: np.ndarray) -> np.ndarray:
    """(..., JOINTS) relative bone angles (radians; each arm's first half, left then right)
    -> (..., JOINTS, 2) joint positions. The left arm is the right one mirrored, so equal angles
    give a symmetric pose."""
    per_arm = len(BONES)
    bones = np.asarray(BONES)
    out = []
    for arm, (shoulder, mirror) in enumerate(zip(SHOULDERS, (-1.0, 1.0), strict=True)):
        relative = angles[..., arm * per_arm:(arm + 1) * per_arm]
        absolute = np.cumsum(relative, axis=-1) - np.pi / 2  # 0 rad: the arm hangs down
        steps = np.stack([mirror * np.cos(absolute), np.sin(absolute)], axis=-1)
        out.append(np.asarray(shoulder) + np.cumsum(steps * bones[:, None], axis=-2))
    return np.concatenate(out, axis=-2)

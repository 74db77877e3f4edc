"""WideResNet as in neural-tangents' README and examples, for tests and benchmarks."""

from __future__ import annotations

from ntkserve import stax


def wide_resnet_block(
    channels: int, strides: tuple[int, int], mismatch: bool, param: str
) -> stax.Architecture:
    main = stax.serial(
        stax.Relu(),
        stax.Conv(channels, (3, 3), strides, padding="SAME", parameterization=param),
        stax.Relu(),
        stax.Conv(channels, (3, 3), padding="SAME", parameterization=param),
    )
    shortcut = (
        stax.Conv(channels, (3, 3), strides, padding="SAME", parameterization=param)
        if mismatch
        else stax.Identity()
    )
    return stax.serial(stax.FanOut(2), stax.parallel(main, shortcut), stax.FanInSum())


def wide_resnet_group(
    n: int, channels: int, strides: tuple[int, int], param: str
) -> stax.Architecture:
    blocks = [wide_resnet_block(channels, strides, True, param)]
    blocks += [wide_resnet_block(channels, (1, 1), False, param) for _ in range(n - 1)]
    return stax.serial(*blocks)


def wide_resnet(
    block_size: int, k: int, num_classes: int, param: str = "ntk", pool: int = 8
) -> stax.Architecture:
    return stax.serial(
        stax.Conv(16, (3, 3), padding="SAME", parameterization=param),
        wide_resnet_group(block_size, 16 * k, (1, 1), param),
        wide_resnet_group(block_size, 32 * k, (2, 2), param),
        wide_resnet_group(block_size, 64 * k, (2, 2), param),
        stax.AvgPool((pool, pool)),
        stax.Flatten(),
        stax.Dense(num_classes, 1.0, 0.0, parameterization=param),
    )

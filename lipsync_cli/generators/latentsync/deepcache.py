"""`--deepcache`: upstream's launcher default (DeepCache 0.1.1's DeepCacheSDHelper, cache_interval 3,
cache_branch_id 0) on diffusers' UNetMotionModel, as the reference README ("Quirks") describes it.

Every third step of a window (0, 3, 6, …; the count restarts per window) runs the whole UNet and keeps the
output of the last up block's second motion module. The steps between run only `conv_in`, the last layer of
the last up block (its resnet on [the kept tensor, the fresh conv_in output], its spatial transformer and
motion module) and the output head; the time embedding and audio context are fresh. About 2.5× fewer UNet
FLOPs over 20 steps, and a different result from the plain run (it is an approximation upstream ships).
"""

from __future__ import annotations

INTERVAL = 3  # full UNet every INTERVAL steps


class DeepCacheUNet:
    """Calls a UNetMotionModel (with upstream's GroupNorms) as forward(x, t, context, step)."""

    def __init__(self, unet):
        self.unet = unet
        self.kept = None
        self._hook = unet.up_blocks[-1].motion_modules[-2].register_forward_hook(self._keep)

    def _keep(self, _module, _args, out):
        self.kept = out

    def close(self) -> None:
        self._hook.remove()
        self.kept = None

    def __call__(self, x, t, context, step: int):
        """x (B, 13, F, h, w), t timestep, context (B·F, 50, 384) → (B, 4, F, h, w) noise prediction."""
        if step % INTERVAL == 0 or self.kept is None:
            return self.unet(x, t, encoder_hidden_states=context).sample
        return self._shallow(x, t, context)

    def _shallow(self, x, t, context):
        import torch

        unet, (b, _, f) = self.unet, x.shape[:3]
        unet.conv_norm_out.frames.n = f  # the joint GroupNorms' frame count (set by the UNet's pre-hook otherwise)
        steps = torch.as_tensor(t, device=x.device).reshape(-1).expand(b)
        emb = unet.time_embedding(unet.time_proj(steps).to(x.dtype)).repeat_interleave(f, dim=0)
        sample = unet.conv_in(x.permute(0, 2, 1, 3, 4).reshape(b * f, *x.shape[1:2], *x.shape[3:]))
        block = unet.up_blocks[-1]
        h = block.resnets[-1](input_tensor=torch.cat([self.kept, sample], dim=1), temb=emb)
        h = block.attentions[-1](hidden_states=h, encoder_hidden_states=context, return_dict=False)[0]
        h = block.motion_modules[-1](h, num_frames=f)
        h = unet.conv_out(unet.conv_act(unet.conv_norm_out(h)))
        return h.reshape(b, f, *h.shape[1:]).permute(0, 2, 1, 3, 4)

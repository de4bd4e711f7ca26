"""A NumPy transcription of GD²PO's public advantage code, for parity tests.

Source: github.com/Qwen-Applications/GD2PO, commit f1ad765bc9a330e6cf387f95e9c1e5a6c4bb2d02,
tool-calling/verl/trainer/ppo/ray_trainer.py (the N-reward copy; safe-alignment's is the
2-reward special case), verl/trainer/ppo/core_algos.py::compute_grpo_outcome_advantage and
verl/utils/torch_functional.py::masked_{mean,var,whiten}. torch tensors become float64 NumPy
arrays; loops, dict grouping by uid and the order of operations are kept as written there.
Only the advantage arithmetic is transcribed: logging to meta_info is left out.

One extension, marked below: `weights` (per row and reward) multiplies each reward's
normalised advantage, as focal's `gd2po(weights='rubric')` does; None is the public code.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np


def compute_grpo_outcome_advantage(token_level_rewards, response_mask, index, epsilon=1e-6,
                                   norm_adv_by_std_in_grpo=True):
  scores = token_level_rewards.sum(axis=-1).astype(np.float64)
  id2score = defaultdict(list)
  id2mean, id2std = {}, {}
  bsz = scores.shape[0]
  for i in range(bsz):
    id2score[index[i]].append(scores[i])
  for idx in id2score:
    if len(id2score[idx]) == 1:
      id2mean[idx] = 0.0
      id2std[idx] = 1.0
    elif len(id2score[idx]) > 1:
      id2mean[idx] = np.mean(np.array(id2score[idx]))
      id2std[idx] = np.std(np.array([id2score[idx]]), ddof=1)   # torch.std: unbiased
    else:
      raise ValueError(f"no score in prompt index: {idx}")
  for i in range(bsz):
    if norm_adv_by_std_in_grpo:
      scores[i] = (scores[i] - id2mean[index[i]]) / (id2std[index[i]] + epsilon)
    else:
      scores[i] = scores[i] - id2mean[index[i]]
  scores = scores[:, None] * response_mask
  return scores, scores


def masked_sum(values, mask, axis=None):
  valid_values = np.where(mask.astype(bool), values, 0.0)
  return (valid_values * mask).sum(axis=axis)


def masked_mean(values, mask, axis=None):
  s = masked_sum(values, mask, axis)
  return s / (mask.sum(axis=axis) + 1e-8)


def masked_var(values, mask, unbiased=True):
  mean = masked_mean(values, mask)
  centered_values = values - mean
  variance = masked_mean(centered_values ** 2, mask)
  if unbiased:
    mask_sum = mask.sum()
    if mask_sum == 0:
      raise ValueError("At least one element in the mask has to be 1.")
    if mask_sum == 1:
      raise ValueError("The sum of the mask is one, which can cause a division by zero.")
    bessel_correction = mask_sum / (mask_sum - 1)
    variance = variance * bessel_correction
  return variance


def masked_whiten(values, mask, shift_mean=True):
  mean, var = masked_mean(values, mask), masked_var(values, mask)
  whitened = (values - mean) * (1.0 / np.sqrt(var + 1e-8))
  if not shift_mean:
    whitened += mean
  return whitened


def compute_active_gdpo_advantages(reward_tensors, response_mask, index, weights=None):
  token_level_advantages, rollout_advantages = [], []
  for k, reward_tensor in enumerate(reward_tensors):
    normalized_advantage, _ = compute_grpo_outcome_advantage(reward_tensor, response_mask, index)
    if weights is not None:   # extension: focal's weights='rubric'
      normalized_advantage = normalized_advantage * weights[:, k:k + 1]
    token_level_advantages.append(normalized_advantage)
    rollout_advantages.append((normalized_advantage * response_mask).sum(axis=-1))
  return np.stack(token_level_advantages, axis=0), np.stack(rollout_advantages, axis=0)


def get_mixed_sign_conflict_mask(rollout_advantages, eps=1e-8):
  positive_mask = rollout_advantages > eps
  negative_mask = rollout_advantages < -eps
  conflict_mask = positive_mask.any(axis=0) & negative_mask.any(axis=0)
  return conflict_mask, positive_mask, negative_mask


def apply_gdpo_keep_mask(combined_advantage, keep_mask, response_mask, use_masked_whiten=True):
  keep_mask = keep_mask.astype(combined_advantage.dtype)
  filtered_advantage = combined_advantage * keep_mask[:, None] * response_mask
  if use_masked_whiten:
    whiten_mask = keep_mask[:, None] * response_mask
    if whiten_mask.sum() > 0:
      return masked_whiten(filtered_advantage, whiten_mask) * whiten_mask
    return np.zeros_like(filtered_advantage)
  return filtered_advantage


def compute_gdpo_group_keep_ratio(keep_mask, index):
  keep_mask_float = keep_mask.astype(np.float32)
  group_ratio = np.zeros_like(keep_mask_float)
  for group_id in np.unique(index):
    group_mask = index == group_id
    group_size = int(group_mask.sum())
    if group_size == 0:
      continue
    kept_count = keep_mask_float[group_mask].sum()
    group_ratio[group_mask] = kept_count / float(group_size)
  return group_ratio


def gd2po_advantages(reward_tensors, response_mask, index, variant, ratio_threshold=0.2,
                     ratio_eps=1e-8, use_masked_whiten=True, weights=None):
  """compute_advantage's gdpo_filter_group_ratio (hard) or
  gdpo_filter_ratio_conflict_group_ratio (snr) branch: (advantages [N, L], ratio [N] or None).

  reward_tensors: per reward, token-level scores [N, L]; index: [N] uids.
  """
  token_level_advantages, rollout_advantages = compute_active_gdpo_advantages(
      reward_tensors, response_mask, index, weights)
  conflict_mask, _, _ = get_mixed_sign_conflict_mask(rollout_advantages)
  ratio = None
  if variant == "hard":
    keep_mask = ~conflict_mask
  else:
    ratio_eps = max(ratio_eps, 1e-12)
    ratio_threshold = max(min(ratio_threshold, 1.0), 0.0)
    ratio = rollout_advantages.sum(axis=0) / (np.abs(rollout_advantages).sum(axis=0) + ratio_eps)
    true_conflict_mask = conflict_mask & (np.abs(ratio) < ratio_threshold)
    keep_mask = ~true_conflict_mask
  new_advantage = token_level_advantages.sum(axis=0)
  group_keep_ratio = compute_gdpo_group_keep_ratio(keep_mask, index)
  new_advantage = new_advantage * group_keep_ratio[:, None]
  return apply_gdpo_keep_mask(new_advantage, keep_mask, response_mask, use_masked_whiten), ratio

import torch.nn.functional as F

try:
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    _SUPPORTS_FLEX_ATTENTION = True
except ImportError:
    _SUPPORTS_FLEX_ATTENTION = False


def _sdpa_or_flex_attention():
    if _SUPPORTS_FLEX_ATTENTION:

        def _attention_call(q, k, v, mask, dropout_p, is_causal):
            if isinstance(mask, BlockMask):
                if dropout_p > 0.0:
                    raise ValueError("Flex attention does not support dropout.")
                return flex_attention(q, k, v, block_mask=mask)
            if mask is not None:
                mask = mask[:, None, :, :]
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)

    else:

        def _attention_call(q, k, v, mask, dropout_p, is_causal):
            if mask is not None:
                mask = mask[:, None, :, :]
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)

    return _attention_call

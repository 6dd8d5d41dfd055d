//! Sampling from a trained language model (`gpt:` on a text data set): the model's next-token
//! distribution at the prompt's last position, drawn at a temperature, appended, repeated.
//!
//! The network reads a fixed context of T ids. A prompt shorter than T fills positions
//! 0..len (the rest is padding that causal attention never lets an earlier position see); once
//! the text is longer than T, the window slides over its last T tokens.

use crate::nn::{Network, Workspace};
use crate::rng::Rng;

/// `tokens` new token ids after `prompt` (ids in the vocabulary), each drawn from
/// softmax(logits / temperature) at the last filled position (`temperature` 0: the arg-max).
pub fn generate(net: &mut Network, prompt: &[u32], tokens: usize, temperature: f32, rng: &mut Rng) -> Vec<u32> {
    let ctx = net.input_shape().len();
    let vocab = net.output_len() / ctx.max(1);
    let mut text: Vec<u32> = prompt.to_vec();
    if text.is_empty() {
        text.push(0);
    }
    let mut ws = Workspace::default();
    net.prepare_forward(&mut ws, 1);
    let mut probs = vec![0.0f32; vocab];
    for _ in 0..tokens {
        let start = text.len().saturating_sub(ctx);
        let window = &text[start..];
        let input = ws.input_mut();
        input.fill(0.0);
        for (v, &id) in input.iter_mut().zip(window) {
            *v = id as f32;
        }
        net.forward(&mut ws, false, rng);
        let last = window.len() - 1;
        let logits = &ws.output()[last * vocab..(last + 1) * vocab];
        let next = if temperature <= 0.0 {
            crate::nn::loss::argmax(logits)
        } else {
            probs.copy_from_slice(logits);
            probs.iter_mut().for_each(|p| *p /= temperature);
            crate::nn::loss::softmax_rows(&mut probs, vocab);
            let u = rng.uniform();
            let mut acc = 0.0f32;
            probs
                .iter()
                .position(|&p| {
                    acc += p;
                    u < acc
                })
                .unwrap_or(vocab - 1)
        };
        text.push(next as u32);
    }
    text.split_off(text.len() - tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::Builder;
    use crate::nn::{Init, Shape};

    #[test]
    fn a_model_that_always_predicts_one_token_generates_it() {
        // The output bias alone decides: token 2 at every position.
        let mut net = Builder::new(Shape::flat(4), Init::Torch, &mut Rng::new(1))
            .embed(3, 4, 0.02)
            .block(2, 1)
            .layernorm()
            .token_dense(3)
            .build();
        let l = net.layers.len();
        let crate::nn::Layer::TokenDense { w, b: Some(b), .. } = net.layers[l - 1] else { panic!() };
        net.params[w].data.fill(0.0);
        net.params[b].data.copy_from_slice(&[0.0, -1.0, 5.0]);
        let out = generate(&mut net, &[0, 1], 7, 0.0, &mut Rng::new(2));
        assert_eq!(out, vec![2; 7]);
        // Sampled at temperature 1: mostly 2 (p = 0.99), and the same draws for the same seed.
        let a = generate(&mut net, &[0], 50, 1.0, &mut Rng::new(3));
        assert_eq!(a, generate(&mut net, &[0], 50, 1.0, &mut Rng::new(3)));
        assert!(a.iter().filter(|&&t| t == 2).count() >= 45, "{a:?}");
    }
}

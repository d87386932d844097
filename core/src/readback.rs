//! Reading tensors back to the host, blocking (native devices) or awaited (WebGPU, which cannot
//! block), through one code path: code that reads is written once as an `async fn` taking a
//! [`Readback`], and the blocking caller runs it with [`now`].

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use burn::tensor::{Tensor, TensorData};

use crate::error::{Error, Result};

/// How a tensor comes back to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readback {
    /// `into_data`: waits for the device in place.
    Blocking,
    /// `into_data_async`: yields to the event loop while the device works.
    Async,
}

impl Readback {
    /// The tensor's values on the host.
    pub async fn read<const D: usize>(self, t: Tensor<D>) -> Result<TensorData> {
        match self {
            Readback::Blocking => Ok(t.into_data()),
            Readback::Async => t
                .into_data_async()
                .await
                .map_err(|e| Error::Device(format!("{e:?}"))),
        }
    }

    /// The tensor's values as f32.
    pub async fn read_f32<const D: usize>(self, t: Tensor<D>) -> Result<Vec<f32>> {
        self.read(t)
            .await?
            .try_into_vec::<f32>()
            .map_err(|e| Error::Device(format!("{e:?}")))
    }
}

/// Runs `future` to completion on this thread. Only for futures whose reads are all
/// [`Readback::Blocking`], which never wait: anything else is a bug and panics.
pub fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a blocking read path awaited something"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_reads_complete_at_once() {
        let t =
            Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0], [2]), &Default::default());
        assert_eq!(now(Readback::Blocking.read_f32(t)).unwrap(), vec![1.0, 2.0]);
    }
}

//! `plimsoll promote --from ENV --to ENV`: the digests one environment's
//! images resolve to in their registries, pinned in the other's override
//! files, printed as a patch for `git apply` ([`crate::promote`]). The
//! patched repository is loaded before the patch is printed: a patch that
//! would not load, or would not pin what it says, is an error instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context as _, Result, bail};

use super::load::{load, load_from};
use super::{Exit, Global, print, runtime};
use crate::drift::Patched;
use crate::promote::{self, Promoted};

/// `plimsoll promote`.
pub(super) fn run(
    path: &Path,
    (from, to): (&str, &str),
    stacks: &[String],
    global: &Global,
) -> Result<Exit> {
    let desired = load(path, stacks, &global.loading)?;
    let images = promote::images(&desired, from, to, stacks)?;
    if images.is_empty() {
        eprintln!(
            "warning: no stack runs on hosts of both {from} and {to} with a registry image: nothing to promote"
        );
    }
    let digests = runtime()?.block_on(resolve(&images))?;
    let files = global.loading.host.files(path)?;
    let promotion = promote::patch(&desired, to, &images, &digests, &files);
    let patch = &promotion.patch;
    if !patch.edited.is_empty() {
        let patched = Patched {
            base: &files,
            edited: &patch.edited,
        };
        let after = load_from(&patched, path, stacks, &global.loading)
            .context("the repository with this patch applied does not load; nothing was printed")?;
        check_pinned(&after, to, &promotion.pins)?;
    }
    for u in &patch.unwritten {
        eprintln!("not in the patch: {u}");
    }
    let title =
        format!("promote --from {from} --to {to}: pins in {to} the image digests {from} runs");
    print(&desired.masker.mask(&patch.to_text_as(&title, "pins")))?;
    Ok(if patch.written.is_empty() && patch.unwritten.is_empty() {
        Exit::Success
    } else {
        Exit::Pending
    })
}

/// The digest each image that does not pin one resolves to in its
/// registry, asked through the engine once per reference.
async fn resolve(images: &[Promoted]) -> Result<BTreeMap<String, String>> {
    let wanted: BTreeSet<&str> = images
        .iter()
        .filter(|i| promote::pinned_digest(&i.from).is_none())
        .map(|i| i.from.as_str())
        .collect();
    if wanted.is_empty() {
        return Ok(BTreeMap::new());
    }
    let engine = crate::live::Engine::connect()
        .await
        .context("promote asks the registry through the Docker engine")?;
    let engine = &engine;
    let asked = wanted.iter().map(|&image| async move {
        let digest = engine.registry_digest(image).await?.with_context(|| {
            format!("the engine's answer for {image} has no digest; is the engine older than Docker 20.10?")
        })?;
        Ok::<_, anyhow::Error>((image.to_string(), digest))
    });
    Ok(futures_util::future::try_join_all(asked)
        .await?
        .into_iter()
        .collect())
}

/// Every pin the patch writes is what environment `to` runs once it is applied.
fn check_pinned(after: &crate::spec::Desired, to: &str, pins: &[promote::Pin]) -> Result<()> {
    for pin in pins {
        let now = after
            .stacks
            .iter()
            .find(|s| s.name == pin.stack)
            .map(|s| after.stack_in(s, to).whole())
            .and_then(|s| s.services.get(&pin.service).and_then(|s| s.image.clone()));
        if now.as_deref() != Some(pin.image.as_str()) {
            bail!(
                "{}/{}: with the patch applied, environment {to} runs {} instead of {}; \
                 a file of the stack sets its image after compose.{to}.yaml: pin it there by hand",
                pin.stack,
                pin.service,
                now.as_deref().unwrap_or("no image"),
                pin.image
            );
        }
    }
    Ok(())
}

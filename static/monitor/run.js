// Run page: while the run is queued or running, poll its status and update the progress bar;
// reload once when it ends so the counts and errors show.
(function () {
  const box = document.getElementById("run-progress");
  if (!box || !["queued", "running"].includes(box.dataset.status)) return;
  const field = (name) => box.querySelector(`[data-field="${name}"]`);
  async function poll() {
    const response = await fetch(box.dataset.statusUrl, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const run = await response.json();
    field("status").textContent = run.status;
    field("processed").textContent = run.processed;
    field("total").textContent = run.total;
    field("bar").max = Math.max(run.total, 1);
    field("bar").value = run.processed;
    if (!["queued", "running"].includes(run.status)) window.location.reload(); // done, failed, superseded
    else window.setTimeout(poll, 1500);
  }
  window.setTimeout(poll, 1000);
})();

// Small comforts on top of plain forms; every page works without this file.
// Enter in an input marked data-enter-clicks presses the button it names
// (the "New allowed value" box adds the value instead of submitting the form).
document.addEventListener("keydown", (event) => {
  const input = event.target.closest && event.target.closest("[data-enter-clicks]");
  if (!input || event.key !== "Enter") return;
  const button = document.querySelector(input.dataset.enterClicks);
  if (button) {
    event.preventDefault();
    button.click();
  }
});

// A select marked data-autosubmit submits its form when changed (the Runs tab's state filter).
document.addEventListener("change", (event) => {
  if (event.target.matches && event.target.matches("select[data-autosubmit]")) event.target.form.requestSubmit();
});

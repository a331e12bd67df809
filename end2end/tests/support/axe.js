// Accessibility checks with axe-core (not ours): the serious and critical violations on a page.
const AxeBuilder = require('@axe-core/playwright').default;

// Serious and critical violations on the page as it is, one line each.
async function seriousViolations(page) {
  const { violations } = await new AxeBuilder({ page }).analyze();
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 4).map((n) => n.target.join(' ')).join(', ')}`);
}

module.exports = { seriousViolations };

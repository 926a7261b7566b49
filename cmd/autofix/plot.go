package main

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/autofix/autofix/sim"
)

// policyColors tell the policies apart; the glyph shapes do too, for points that
// overlap (autofix and the oracle often do).
var policyColors = []color.RGBA{
	{R: 120, G: 120, B: 120, A: 255},
	{R: 230, G: 130, B: 0, A: 255},
	{R: 150, G: 60, B: 190, A: 255},
	{R: 0, G: 110, B: 200, A: 255},
	{R: 200, G: 30, B: 30, A: 255},
	{R: 20, G: 150, B: 60, A: 255},
}

// plotSummaries writes a PNG of each policy's cost per fixed failure (as a multiple of
// the oracle's) against its fix rate, one marker per policy with a legend; over
// several seeds, the means with their 95% intervals as error bars.
func plotSummaries(path, scenario string, sums []SeedSummary) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Retry policies on the %q scenario", scenario)
	seeds := 1
	if len(sums) > 0 {
		if sums[0].Text == sim.TextReal {
			p.Title.Text += ", real failure text"
		}
		if seeds = len(sums[0].Seeds); seeds > 1 {
			p.Title.Text += fmt.Sprintf(", %d seeds (means, 95%% intervals)", seeds)
		}
	}
	p.X.Label.Text = "fix rate (remediable failures fixed by the policy)"
	p.Y.Label.Text = "cost per fixed failure / the oracle's"
	p.X.Min, p.X.Max = 0, 1.05
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	p.Legend.Left, p.Legend.Top = true, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(10), vg.Points(-10)

	shapes := []draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{},
		draw.PyramidGlyph{}, draw.RingGlyph{}, draw.CrossGlyph{}}
	for n, s := range sums {
		xy := plotter.XYs{{X: s.FixRate.Mean, Y: s.VsOracle.Mean}}
		pt, err := plotter.NewScatter(xy)
		if err != nil {
			return err
		}
		pt.Radius = vg.Points(5)
		pt.Color = policyColors[n%len(policyColors)]
		pt.Shape = shapes[n%len(shapes)]
		p.Add(pt)
		if seeds > 1 {
			bars := errorBars{XYs: xy,
				XErrors: plotter.XErrors{{Low: s.FixRate.Mean - s.FixRate.Lo, High: s.FixRate.Hi - s.FixRate.Mean}},
				YErrors: plotter.YErrors{{Low: s.VsOracle.Mean - s.VsOracle.Lo, High: s.VsOracle.Hi - s.VsOracle.Mean}}}
			xb, err := plotter.NewXErrorBars(bars)
			if err != nil {
				return err
			}
			yb, err := plotter.NewYErrorBars(bars)
			if err != nil {
				return err
			}
			xb.Color, yb.Color = pt.Color, pt.Color
			p.Add(xb, yb)
		}
		p.Y.Max = max(p.Y.Max, 1.6*s.VsOracle.Hi) // room for the legend above
		p.Legend.Add(fmt.Sprintf("%s: fixes %.1f%%, %.1f%% on the first retry, %.2fx the oracle's cost per fixed failure",
			s.Policy, 100*s.FixRate.Mean, 100*s.FirstRetryRate.Mean, s.VsOracle.Mean), pt)
	}
	if len(sums) > 0 {
		p.Legend.Add(fmt.Sprintf("(a failure left unfixed: re-run by hand at the oracle's price, plus $%.2f of on-call time)",
			sums[0].OnCall.PerFailure()))
	}
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// errorBars is one point with its intervals, for gonum's error bars.
type errorBars struct {
	plotter.XYs
	plotter.XErrors
	plotter.YErrors
}

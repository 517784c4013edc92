// A small time-series plot (uPlot) over the client's last days.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";

export type Series = { label: string; color: string; values: (number | null)[] };

export function Plot(props: { title: string; days: number[]; series: Series[]; unit: string }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const options: uPlot.Options = {
      title: props.title,
      width: element.clientWidth || 320,
      height: 180,
      scales: { x: { time: true } },
      axes: [{}, { label: props.unit, size: 60 }],
      series: [{}, ...props.series.map((s) => ({ label: s.label, stroke: s.color, width: 2, spanGaps: true }))],
    };
    const plot = new uPlot(options, [props.days, ...props.series.map((s) => s.values)], element);
    const resize = new ResizeObserver(() => plot.setSize({ width: element.clientWidth, height: 180 }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [props.days, props.series]);
  return <div class="plot" ref={box} role="img" aria-label={props.title} />;
}
